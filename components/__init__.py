"""synapse-workers: sizing, Synapse worker config and Kubernetes objects for a Synapse deployment."""
