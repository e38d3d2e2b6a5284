"""Prints the CloudFormation template SAM deploys: template.yaml through the SAM
translator (the package `sam validate` and `sam deploy` use), as JSON on stdout.

    .venv/bin/python scripts/sam-transform.py [template.yaml]

tests/tests/template.rs reads this output, so that what it checks is what reaches
CloudFormation, policies SAM adds on its own included (an event source's managed
policy, X-Ray's, the basic execution role's), not only what template.yaml says.
Offline: no AWS call, no credentials.
"""

import json
import os
import sys

# The partition of the ARNs SAM writes comes from the region; any commercial one.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from samcli.yamlhelper import yaml_parse  # noqa: E402
from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader  # noqa: E402
from samtranslator.translator.transform import transform  # noqa: E402


class NoManagedPolicies(ManagedPolicyLoader):
    """The template names no managed policy by name; if it did, SAM would ask IAM
    for its ARN. Refuse instead of calling AWS."""

    def __init__(self):
        pass

    def load(self):
        sys.exit("sam-transform: the template names a managed policy; inline statements only")


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "template.yaml"
    )
    with open(path, encoding="utf-8") as f:
        template = yaml_parse(f.read())
    # As `sam validate` does: the code is built and uploaded at deploy time; here a
    # placeholder stands for where it would be.
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") == "AWS::Serverless::Function":
            properties = resource.setdefault("Properties", {})
            if not str(properties.get("CodeUri", "")).startswith("s3://"):
                properties["CodeUri"] = "s3://placeholder-bucket/placeholder-key"
    print(json.dumps(transform(template, {}, NoManagedPolicies()), indent=1, sort_keys=True, default=str))


if __name__ == "__main__":
    main()
