//! SPDX 2.3 software bill of materials for a node image.
