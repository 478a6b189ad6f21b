//! shadow-utils messages about accounts and groups (`useradd`, `usermod`,
//! `gpasswd`, `groupadd`): new accounts and privilege grants.

/// An account change one message records.
#[derive(Debug, PartialEq, Eq)]
pub enum AccountEvent<'a> {
    /// `useradd[..]: new user: name=X, UID=…`
    NewUser { name: &'a str },
    /// `usermod[..]: add 'X' to group 'G'` (also `to shadow group`), or
    /// `gpasswd[..]: user X added by R to group G`.
    GroupAdd { user: &'a str, group: &'a str },
}

/// `prog` is the syslog program name; `None` when the message is not one
/// of the above.
pub fn parse<'a>(prog: &str, msg: &'a str) -> Option<AccountEvent<'a>> {
    match prog {
        "useradd" | "adduser" => {
            let rest = msg.strip_prefix("new user: name=")?;
            let name = rest.split(',').next()?;
            Some(AccountEvent::NewUser { name })
        }
        "usermod" => {
            let rest = msg.strip_prefix("add '")?;
            let (user, rest) = rest.split_once("' to ")?;
            let rest = rest.strip_prefix("shadow ").unwrap_or(rest);
            let group = rest.strip_prefix("group '")?.strip_suffix('\'')?;
            Some(AccountEvent::GroupAdd { user, group })
        }
        "gpasswd" => {
            let rest = msg.strip_prefix("user ")?;
            let (user, rest) = rest.split_once(" added by ")?;
            let (_by, group) = rest.split_once(" to group ")?;
            Some(AccountEvent::GroupAdd { user, group })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_messages() {
        assert_eq!(
            parse(
                "useradd",
                "new user: name=backup2, UID=1001, GID=1001, home=/home/backup2, shell=/bin/bash, from=/dev/pts/0"
            ),
            Some(AccountEvent::NewUser { name: "backup2" })
        );
        assert_eq!(
            parse("usermod", "add 'backup2' to group 'sudo'"),
            Some(AccountEvent::GroupAdd {
                user: "backup2",
                group: "sudo"
            })
        );
        assert_eq!(
            parse("usermod", "add 'backup2' to shadow group 'sudo'"),
            Some(AccountEvent::GroupAdd {
                user: "backup2",
                group: "sudo"
            })
        );
        assert_eq!(parse("usermod", "change user 'x' shell"), None);
    }
}
