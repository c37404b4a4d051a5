//! `vpc_endpoint`: a gateway endpoint (DynamoDB, S3) on route tables, so traffic to the service
//! needs no internet path.

use crate::schema::{no_check, Field, FieldType, Kind, Update};

pub static KIND: Kind = Kind {
    name: "vpc_endpoint",
    doc: "A gateway VPC endpoint for DynamoDB or S3, routed from the given route tables.",
    fields: &[
        Field::required("vpc", FieldType::Ref(&["vpc"]), Update::Replace, "The VPC."),
        Field::required("service", FieldType::Enum(&["dynamodb", "s3"]), Update::Replace, "The AWS service."),
        Field::required(
            "route_tables",
            FieldType::List(&FieldType::Ref(&["route_table"])),
            Update::InPlace,
            "Route tables that get the service's prefix-list route.",
        ),
        Field::optional("tags", FieldType::StringMap, None, Update::InPlace, "Tags besides the stack's own."),
    ],
    outputs: &[("id", "Endpoint id (vpce-...)")],
    check: no_check,
};
