"""The call driver: one task group per call executing the policies' decisions."""
