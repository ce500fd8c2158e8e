//! The text of every mail we send. Plain text: no tracking pixels, no
//! remote content, nothing that reports back when it is read.

use super::Outgoing;

pub fn verify_email<'a>(to: &'a str, name: &str, link: &str) -> Outgoing<'a> {
    Outgoing {
        kind: "verify_email",
        to,
        subject: "Confirm your email address".into(),
        body: format!(
            "Hi {name},\n\nPlease confirm this is your email address by opening this link:\n\n{link}\n\n\
             The link works once and expires in 48 hours. If you did not sign up, ignore this mail.\n"
        ),
    }
}

pub fn account_exists<'a>(to: &'a str, login_link: &str) -> Outgoing<'a> {
    Outgoing {
        kind: "account_exists",
        to,
        subject: "Someone tried to sign up with your email".into(),
        body: format!(
            "Hi,\n\nSomebody (maybe you) tried to create an account with this email address, which already has one.\n\
             To sign in, go to {login_link}. If you forgot your password, you can reset it there.\n"
        ),
    }
}

pub fn password_reset<'a>(to: &'a str, link: &str) -> Outgoing<'a> {
    Outgoing {
        kind: "password_reset",
        to,
        subject: "Reset your password".into(),
        body: format!(
            "Hi,\n\nOpen this link to choose a new password:\n\n{link}\n\n\
             The link works once and expires in an hour. Resetting signs you out everywhere.\n\
             If you did not ask for this, ignore this mail: your password stays as it is.\n"
        ),
    }
}

pub fn security_alert<'a>(to: &'a str, what: &str) -> Outgoing<'a> {
    Outgoing {
        kind: "security_alert",
        to,
        subject: "Security alert for your account".into(),
        body: format!(
            "Hi,\n\n{what}\n\nIf this was you, there is nothing to do. If not, reset your password now \
             and sign out of every session in Settings.\n"
        ),
    }
}

pub fn invitation<'a>(to: &'a str, inviter: &str, team: &str, role: &str, link: &str) -> Outgoing<'a> {
    Outgoing {
        kind: "team_invitation",
        to,
        subject: format!("{inviter} invited you to {team}"),
        body: format!(
            "Hi,\n\n{inviter} invited you to join the team \"{team}\" as {role}.\n\nAccept here:\n\n{link}\n\n\
             The invitation works once and expires in 7 days.\n"
        ),
    }
}
