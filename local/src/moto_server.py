"""moto's server, started with the local cloud's fixes to moto's speed (not to its
behaviour). See local/EMULATIONS.md, "moto's server"."""

import sys

from moto.core.utils import unix_time
from moto.sqs import models as sqs


def within_retention_period(self, queue_name, message):
    """The rule moto applies to each message it hands out, without computing every
    attribute of the queue (three scans of all its messages, three times) to read one:
    ReceiveMessage was quadratic in the queue's length."""
    queue = self.get_queue(queue_name)
    return int(queue.message_retention_period) + message.sent_timestamp / 1000 > unix_time()


if not hasattr(sqs.SQSBackend, "is_message_valid_based_on_retention_period"):
    sys.exit("moto changed: revisit local/src/moto_server.py")
sqs.SQSBackend.is_message_valid_based_on_retention_period = within_retention_period

from moto.server import main  # noqa: E402

main(sys.argv[1:])
