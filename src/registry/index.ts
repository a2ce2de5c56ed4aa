export {
  parseReference,
  tryParseReference,
  formatReference,
  repositoryName,
  normaliseRegistry,
  apiHost,
  sameImageName,
  DOCKER_HUB,
  DOCKER_HUB_API_HOST,
  type Reference,
} from './reference.js';
export { parseChallenges, findChallenge, type Challenge } from './challenge.js';
export { resolveCredentials, runCredentialHelper, ANONYMOUS, type Credentials, type CredentialLookup } from './credentials.js';
export { Transport, isLoopbackHost, parseRetryAfter, type TransportOptions, type HttpRequest, type HttpResponse } from './transport.js';
export { Authenticator, pullScope, pushScope } from './auth.js';
export {
  RegistryClient,
  MANIFEST_ACCEPT,
  DEFAULT_CHUNK_SIZE,
  type ManifestResponse,
  type ManifestHead,
  type UploadResult,
} from './client.js';
export { parseUploadRange } from './blob-upload.js';
export { UploadStateStore, defaultStateDir, type SavedUpload } from './upload-state.js';
export { RegistryTarget, type RegistryTargetOptions } from './target.js';
export { RegistryReader, resolveRemote, type RemoteImage } from './source.js';
export { openRegistry, type RegistryOptions } from './options.js';
export { redactUrl } from './redact.js';
