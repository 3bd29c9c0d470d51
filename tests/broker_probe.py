"""Ask the broker, as its administrator, whether a queue exists: a passive declare, which never creates one."""

from __future__ import annotations

import urllib.parse

import pika


def queue_exists(admin_url: str, queue: str, vhost: str = "/") -> bool:
    """Whether ``queue`` exists in ``vhost`` (false when the vhost is gone); ``admin_url`` is the administrator's
    AMQP URL (any vhost: ``vhost`` replaces it)."""
    url = urllib.parse.urlsplit(admin_url)._replace(path="/" + urllib.parse.quote(vhost, safe="")).geturl()
    try:
        conn = pika.BlockingConnection(pika.URLParameters(url))
    except pika.exceptions.ProbableAccessDeniedError:  # 530: vhost not found
        return False
    with conn:
        try:
            conn.channel().queue_declare(queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                return False
            raise
        return True
