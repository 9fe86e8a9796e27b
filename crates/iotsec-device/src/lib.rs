//! iotsec-device: (skeleton; filled in by its issue).
