"""What every test package shares: the one scaled time unit (:mod:`tests.support.timing`)."""
