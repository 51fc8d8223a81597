"""followthrough: runs a sales team's around-the-signature playbook from the calendar."""

__version__ = "0.1.0"
