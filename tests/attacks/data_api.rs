//! Attacks through the data API (`POST /api/v1/query`).
