"""Wire contracts: pydantic models that an inference service and the gateway both speak."""
