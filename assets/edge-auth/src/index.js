// index.js: the Lambda@Edge entry points, with the configuration the provisioner baked into the
// package next to this file (config.json: issuer, client id, hosted UI, keys, state key).

import config from './config.json' with { type: 'json' };
import { originResponse, viewerRequest } from './auth.js';

const onViewerRequest = viewerRequest(config);

/** One function, both events: CloudFront says which in the event. */
export async function handler(event) {
  const type = event.Records[0].cf.config.eventType;
  return type === 'origin-response' ? originResponse(event) : onViewerRequest(event);
}
