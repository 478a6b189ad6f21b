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
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::OpenIncident => "open an incident",
            Action::ReleaseIncident => "release an incident",
        }
    }
}

/// viewer and auditor read; responder and admin also open and release.
pub fn allowed(role: Role, action: Action) -> bool {
    match action {
        Action::Read => true,
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
            (Viewer, [true, false, false]),
            (Auditor, [true, false, false]),
            (Responder, [true, true, true]),
            (Admin, [true, true, true]),
        ];
        for (role, row) in want {
            let got = [Read, OpenIncident, ReleaseIncident].map(|a| allowed(role, a));
            assert_eq!(got, row, "{role:?}");
        }
    }
}
