"""Print a development JWT for a user id, signed with the configured SECRET_KEY and ALGORITHM.

python -m scripts.mint_token 123            # a regular user
python -m scripts.mint_token 1 --admin      # an admin
"""

import argparse
from datetime import timedelta

from app.core.config import get_settings
from app.core.security import ADMIN_ROLE, create_access_token


def main() -> None:
    parser = argparse.ArgumentParser(description="Mint a development JWT.")
    parser.add_argument("user_id", help="the integer user id the token is for")
    parser.add_argument("--admin", action="store_true", help="add the admin role")
    parser.add_argument("--minutes", type=int, default=None, help="token lifetime")
    args = parser.parse_args()
    if not args.user_id.lstrip("-").isdigit():  # also when `make token` was run without USER=
        parser.error(f"user id must be an integer, got {args.user_id!r} (e.g. make token USER=123)")
    settings = get_settings()
    lifetime = timedelta(minutes=args.minutes) if args.minutes else None
    roles = [ADMIN_ROLE] if args.admin else []
    print(create_access_token(int(args.user_id), settings, roles=roles, expires_in=lifetime))


if __name__ == "__main__":
    main()
