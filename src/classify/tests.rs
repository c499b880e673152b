//! Unit tests for the rules loader, the classifier's glue and ip_mismatch.
