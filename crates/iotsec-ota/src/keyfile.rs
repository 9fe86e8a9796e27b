//! keyfile (std)
