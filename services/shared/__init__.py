"""Code shared by every Lambda function of the order saga (packaged into each function)."""
