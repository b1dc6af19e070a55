//! (placeholder: owned by the node-assets helper)
