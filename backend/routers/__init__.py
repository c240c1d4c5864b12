"""One router per resource; route functions stay thin and delegate to ``backend.services``."""
