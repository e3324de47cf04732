from app.models.base import Base
from app.models.enums import PaymentProvider, PaymentStatus
from app.models.payment import Payment

__all__ = ["Base", "Payment", "PaymentProvider", "PaymentStatus"]
