//! iotsec-broker: (skeleton; filled in by its issue).
