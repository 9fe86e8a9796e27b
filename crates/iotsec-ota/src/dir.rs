//! dir (std)
