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

pub fn deletion_scheduled<'a>(to: &'a str, when: &str, cancel_link: &str) -> Outgoing<'a> {
    Outgoing {
        kind: "deletion_scheduled",
        to,
        subject: "Your account will be deleted".into(),
        body: format!(
            "Hi,\n\nYou asked us to delete your account. Every session was signed out and your API keys stopped \
             working. On {when} your account, your images, your personal team and your keys will be erased for good.\n\n\
             Changed your mind? This link restores your account as it was (it works once, until then):\n\n{cancel_link}\n"
        ),
    }
}

pub fn deletion_cancelled<'a>(to: &'a str) -> Outgoing<'a> {
    Outgoing {
        kind: "deletion_cancelled",
        to,
        subject: "Your account will not be deleted".into(),
        body: "Hi,\n\nThe deletion of your account was cancelled: it is as it was, and your API keys work again. \
               Sign in again to continue.\n"
            .into(),
    }
}

pub fn team_dissolved<'a>(to: &'a str, team: &str) -> Outgoing<'a> {
    Outgoing {
        kind: "team_dissolved",
        to,
        subject: format!("The team \"{team}\" was dissolved"),
        body: format!(
            "Hi,\n\nThe owner of the team \"{team}\" deleted their account and the team had no admin to take it \
             over, so it was dissolved: its images and API keys are gone.\n"
        ),
    }
}

pub fn team_handed_over<'a>(to: &'a str, team: &str) -> Outgoing<'a> {
    Outgoing {
        kind: "team_handed_over",
        to,
        subject: format!("You now own the team \"{team}\""),
        body: format!(
            "Hi,\n\nThe owner of the team \"{team}\" deleted their account. As its admin, you are now its owner.\n"
        ),
    }
}

pub fn export_ready<'a>(to: &'a str, link: &str, until: &str) -> Outgoing<'a> {
    Outgoing {
        kind: "export_ready",
        to,
        subject: "Your data export is ready".into(),
        body: format!(
            "Hi,\n\nThe copy of your data you asked for is ready. Sign in and download it here until {until}:\n\n{link}\n"
        ),
    }
}

pub fn confirm_new_email<'a>(to: &'a str, link: &str) -> Outgoing<'a> {
    Outgoing {
        kind: "confirm_new_email",
        to,
        subject: "Confirm your new email address".into(),
        body: format!(
            "Hi,\n\nOpen this link to make this the email address of your account:\n\n{link}\n\n\
             The link works once and expires in 48 hours. If you did not ask for this, ignore this mail.\n"
        ),
    }
}

pub fn email_changing<'a>(to: &'a str) -> Outgoing<'a> {
    Outgoing {
        kind: "email_changing",
        to,
        subject: "Your account's email address is being changed".into(),
        body: "Hi,\n\nSomebody signed in to your account asked to change its email address; a link was sent to the \
               new address. If this was not you, reset your password now and sign out of every session in Settings.\n"
            .into(),
    }
}
