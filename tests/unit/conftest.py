"""Fixtures the unit tests share."""

import httpx
import pytest
from prometheus_client import CollectorRegistry

from services.gateway.app import http_api
from services.gateway.config import GatewaySettings
from services.gateway.metrics import GatewayMetrics
from services.gateway.replies import PendingReplies, Requests
from services.gateway.usecases import GatewayService
from tests.gateway_stand_in import ISSUERS, UNREAD, Broker


@pytest.fixture
async def api():
    settings = GatewaySettings(gateway_token_issuers=UNREAD, gateway_command_timeout_ms=200,
                               gateway_query_timeout_ms=200)
    pending = PendingReplies()
    broker = Broker(pending)
    service = GatewayService(Requests(broker, pending, "reply.gateway.unit"), broker, command_timeout=0.2,
                             query_timeout=0.2)
    registry = CollectorRegistry()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=http_api(settings, service,
                                                                            GatewayMetrics(registry), ISSUERS.trusted())),
                                 base_url="http://gateway") as client:
        client.broker, client.registry = broker, registry
        yield client

