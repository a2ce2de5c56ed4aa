export { verifyImage, verifyImages, type VerifyOptions } from './verify-image.js';
export { compareImages, type Comparison } from './compare.js';
export type { VerifyFinding, VerifyReport } from './report.js';
