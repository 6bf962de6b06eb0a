"""Call events: the timeline of every call, and the stores that keep it."""
