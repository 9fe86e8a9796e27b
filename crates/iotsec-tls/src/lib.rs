//! iotsec-tls: (skeleton; filled in by its issue).
