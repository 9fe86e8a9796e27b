//! iotsec-msg: (skeleton; filled in by its issue).
