"""What every test package shares: the one scaled time unit (:mod:`tests.support.timing`)
and the one way to wait for something that must happen (:mod:`tests.support.waiting`)."""
