"""The notifier: status changes become messages through Apprise."""
