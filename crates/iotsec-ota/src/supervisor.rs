//! supervisor (std)
