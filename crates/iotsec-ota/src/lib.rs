//! iotsec-ota: (skeleton; filled in by its issue).
