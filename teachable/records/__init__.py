"""What phases hand each other, one schema each, and the run layout naming every path."""
