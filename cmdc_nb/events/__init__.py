"""The event bus: every committed change is published here."""

from cmdc_nb.events import topics
from cmdc_nb.events._bus import Event, EventBus, EventStream, Subscription

__all__ = ["Event", "EventBus", "EventStream", "Subscription", "topics"]
