// index.js: the Lambda@Edge entry points, with the configuration the provisioner wrote into the
// package next to this file (config.json: issuer, client id, hosted UI, keys, state key), read
// once per instance: Lambda@Edge has no environment variables.

import { readFileSync } from 'node:fs';
import { originResponse, viewerRequest } from './auth.js';

const config = JSON.parse(readFileSync(new URL('./config.json', import.meta.url), 'utf8'));
const onViewerRequest = viewerRequest(config);

/** One function, both events: CloudFront says which in the event. */
export async function handler(event) {
  const type = event.Records[0].cf.config.eventType;
  return type === 'origin-response' ? originResponse(event) : onViewerRequest(event);
}
