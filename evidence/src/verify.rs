//! Store verification (to be written by the evidence implementer).
