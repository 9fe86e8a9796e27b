//! iotsec-pki: (skeleton; filled in by its issue).
