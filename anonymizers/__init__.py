"""wasure's anonymization operators; importing the package registers them all by name."""
from anonymizers import drop, generalize, mask, pseudonym, scrub, scrub_own, topcode  # noqa: F401
from anonymizers.registry import OPERATORS, OperatorError, get_operator, register  # noqa: F401
