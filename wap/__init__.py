"""WAP: the platform's command line and the local test lab."""
