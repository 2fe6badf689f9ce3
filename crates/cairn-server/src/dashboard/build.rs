//! The dashboard's view model, built from the server's state at one instant.
