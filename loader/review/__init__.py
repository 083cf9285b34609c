"""Reviewing a change: what the working tree's models change in the delivered files."""
