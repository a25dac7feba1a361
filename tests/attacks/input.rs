//! Attacks with malformed requests: bad bodies and headers change nothing.
