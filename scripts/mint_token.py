"""Print a development JWT for a user id, signed with the configured SECRET_KEY and ALGORITHM.

python -m scripts.mint_token 123            # a regular user
python -m scripts.mint_token 7 --service    # a trusted backend (booking service, gateway integration)
python -m scripts.mint_token 1 --admin      # an admin
"""

import argparse
from datetime import timedelta

from app.core.config import default_to_development, get_settings
from app.core.security import create_access_token


def main() -> None:
    parser = argparse.ArgumentParser(description="Mint a development JWT.")
    parser.add_argument("user_id", help="the integer user id the token is for")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--admin", action="store_true", help="add the admin role (ADMIN_ROLE)")
    kind.add_argument("--service", action="store_true", help="add the service role (SERVICE_ROLE)")
    parser.add_argument("--minutes", type=int, default=None, help="token lifetime")
    args = parser.parse_args()
    if not args.user_id.lstrip("-").isdigit():  # also when `make token` was run without USER=
        parser.error(f"user id must be an integer, got {args.user_id!r} (e.g. make token USER=123)")
    default_to_development()
    settings = get_settings()
    lifetime = timedelta(minutes=args.minutes) if args.minutes else None
    roles = [settings.admin_role] if args.admin else [settings.service_role] if args.service else []
    print(create_access_token(int(args.user_id), settings, roles=roles, expires_in=lifetime))


if __name__ == "__main__":
    main()
