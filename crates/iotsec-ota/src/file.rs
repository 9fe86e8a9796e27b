//! file (std)
