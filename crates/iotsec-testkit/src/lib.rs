//! iotsec-testkit: (skeleton; filled in by its issue).
