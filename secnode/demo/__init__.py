"""The two-city demo federation and its sample services."""
