// Leaflet with its marker-cluster plugin: the plugin extends the global `L`, so the global is
// set before the plugin is evaluated (module order).
import L from 'leaflet';

window.L = L;
export default L;
