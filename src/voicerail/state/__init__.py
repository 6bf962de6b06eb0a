"""Call state outside one call's memory: which worker serves a call, and calls
left open by a worker that died."""
