"""The core scenarios on a container engine: the same tests as on the embedded engine.

The test functions are the integration suite's own, collected here a second time; the fixtures
they use (api, tables, ...) come from tests/containers/conftest.py, on the container's stack.
"""

from __future__ import annotations

import pytest

from tests.integration.test_api import (  # noqa: F401
    test_new_key_creates_a_new_order,
    test_same_key_and_payload_replays_the_first_response,
    test_same_key_with_different_payload_is_422_and_creates_nothing,
    test_unknown_order_is_404,
    test_x_idempotency_key_header_is_accepted,
)
from tests.integration.test_saga import (  # noqa: F401
    test_declined_payment_releases_the_reservation,
    test_failed_step_compensates_in_reverse_order,
    test_flaky_step_retries_then_completes_with_one_charge,
    test_happy_path_completes_and_records_each_effect_once,
    test_out_of_stock_is_a_business_error_and_not_retried,
)

pytestmark = pytest.mark.containers
