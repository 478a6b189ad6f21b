//! Who may do what on the operators' API (issue 10): the one table every
//! request is checked against, on the server, before anything is read or
//! changed.

use crate::operators::Role;

/// Everything the API lets an operator do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Who am I, which hosts, which incidents and how far along.
    Read,
    /// Open an incident (snapshots and legal holds on its hosts).
    OpenIncident,
    /// Lift an incident's legal holds.
    ReleaseIncident,
    /// Copy a stored bundle out (recorded as an `exported` custody event).
    Download,
    /// Verify a stored bundle against the store (recorded as `verified`).
    Verify,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::OpenIncident => "open an incident",
            Action::ReleaseIncident => "release an incident",
            Action::Download => "download evidence",
            Action::Verify => "verify evidence",
        }
    }

    /// The roles that may, for the refusal's text.
    pub fn who_may(self) -> &'static str {
        match self {
            Action::Read => "every role",
            Action::OpenIncident | Action::ReleaseIncident => "responder or admin",
            Action::Download | Action::Verify => "auditor, responder or admin",
        }
    }
}

/// Every role reads; auditor also downloads and verifies evidence;
/// responder and admin do all that and open and release incidents.
pub fn allowed(role: Role, action: Action) -> bool {
    match action {
        Action::Read => true,
        Action::Download | Action::Verify => {
            matches!(role, Role::Auditor | Role::Responder | Role::Admin)
        }
        Action::OpenIncident | Action::ReleaseIncident => {
            matches!(role, Role::Responder | Role::Admin)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        use Action::*;
        use Role::*;
        let want = [
            (Viewer, [true, false, false, false, false]),
            (Auditor, [true, false, false, true, true]),
            (Responder, [true, true, true, true, true]),
            (Admin, [true, true, true, true, true]),
        ];
        for (role, row) in want {
            let got =
                [Read, OpenIncident, ReleaseIncident, Download, Verify].map(|a| allowed(role, a));
            assert_eq!(got, row, "{role:?}");
        }
    }
}
