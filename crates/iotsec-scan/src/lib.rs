//! iotsec-scan: (skeleton; filled in by its issue).
