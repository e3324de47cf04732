from app.api.v1 import events, payments, refunds, webhooks

# Each router carries its full path (/api/v1/...), so the route seen by the request log and the
# metrics is the whole template, e.g. /api/v1/payments/{id}.
routers = [payments.router, refunds.router, webhooks.router, events.router]
