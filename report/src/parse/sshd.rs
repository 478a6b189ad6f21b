//! OpenSSH `sshd` messages about logons (the message part of a syslog
//! line whose program is `sshd`).

/// What one sshd message says about a logon.
#[derive(Debug, PartialEq, Eq)]
pub enum SshEvent<'a> {
    /// `Failed password for [invalid user] U from IP port P ssh2`
    Failed {
        user: &'a str,
        ip: &'a str,
        invalid_user: bool,
    },
    /// `Accepted password|publickey|… for U from IP port P ssh2`
    Accepted {
        user: &'a str,
        ip: &'a str,
        method: &'a str,
    },
    /// `Invalid user U from IP` (followed by a `Failed` line, which is
    /// the one counted).
    InvalidUser { user: &'a str, ip: &'a str },
}

/// `None` for sshd messages that are not about a logon outcome.
pub fn parse(msg: &str) -> Option<SshEvent<'_>> {
    if let Some(rest) = msg.strip_prefix("Failed ") {
        let (_method, rest) = super::split_once(rest, " for ")?;
        let (user, ip) = user_from(rest)?;
        return Some(match user.strip_prefix("invalid user ") {
            Some(u) => SshEvent::Failed {
                user: u,
                ip,
                invalid_user: true,
            },
            None => SshEvent::Failed {
                user,
                ip,
                invalid_user: false,
            },
        });
    }
    if let Some(rest) = msg.strip_prefix("Accepted ") {
        let (method, rest) = super::split_once(rest, " for ")?;
        let (user, ip) = user_from(rest)?;
        return Some(SshEvent::Accepted { user, ip, method });
    }
    if let Some(rest) = msg.strip_prefix("Invalid user ") {
        let (user, ip) = user_from(rest)?;
        return Some(SshEvent::InvalidUser { user, ip });
    }
    None
}

/// `U from IP[ port P …]`: the last ` from ` so a user name may hold one.
fn user_from(rest: &str) -> Option<(&str, &str)> {
    let i = rest.rfind(" from ")?;
    let user = &rest[..i];
    let ip = rest[i + 6..].split(' ').next()?;
    ip.parse::<std::net::IpAddr>().ok()?;
    Some((user, ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_messages() {
        assert_eq!(
            parse("Failed password for invalid user webmaster from 173.234.31.186 port 38926 ssh2"),
            Some(SshEvent::Failed {
                user: "webmaster",
                ip: "173.234.31.186",
                invalid_user: true
            })
        );
        assert_eq!(
            parse("Failed password for root from 5.36.59.76 port 42393 ssh2"),
            Some(SshEvent::Failed {
                user: "root",
                ip: "5.36.59.76",
                invalid_user: false
            })
        );
        assert_eq!(
            parse("Accepted password for fztu from 119.137.62.142 port 49116 ssh2"),
            Some(SshEvent::Accepted {
                user: "fztu",
                ip: "119.137.62.142",
                method: "password"
            })
        );
        assert_eq!(
            parse("Invalid user test9 from 52.80.34.196"),
            Some(SshEvent::InvalidUser {
                user: "test9",
                ip: "52.80.34.196"
            })
        );
        assert_eq!(parse("pam_unix(sshd:session): session opened"), None);
    }
}
