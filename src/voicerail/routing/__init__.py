"""Routing: provider chains with deadlines, failover, hedging, breakers and budgets."""
